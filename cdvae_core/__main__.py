from cdvae_core.cli import main

raise SystemExit(main())
