from __future__ import annotations

import pytest

from cdvae_core.explore.offline import threedmol_js, threedmol_js_path


def test_local_copy_is_found_or_the_message_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CDVAE_3DMOL_JS", str(tmp_path / "missing.js"))
    with pytest.raises(FileNotFoundError, match="fetch_3dmol.sh"):
        threedmol_js_path()
    fake = tmp_path / "3Dmol-min.js"
    fake.write_text("var $3Dmol = {};")
    monkeypatch.setenv("CDVAE_3DMOL_JS", str(fake))
    assert threedmol_js() == "var $3Dmol = {};"
