"""Write a shipped model's MODEL_CARD.md again from its evaluation folders (after `cdvae
rescore`, a new evaluation or a new predictor), keeping the card's own notes ("Where this model
falls short, and why") unless a new notes file is given.

    python scripts/update_model_card.py checkpoints/perov_5 \
        [--extra "ours, paper's sampler=checkpoints/perov_5/evaluation/paper_sampler"] \
        [--notes NEW_NOTES.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cdvae_core.experiments.model_card import write_model_card

HEADING = "## Where this model falls short, and why"


def current_notes(card: Path) -> str:
    text = card.read_text() if card.is_file() else ""
    return text.split(HEADING, 1)[1].strip() if HEADING in text else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", type=Path)
    p.add_argument("--extra", action="append", default=[],
                   help="'column title=evaluation folder' (repeatable)")
    p.add_argument("--notes", type=Path, help="Markdown file replacing the card's notes")
    args = p.parse_args()
    folder = args.model_dir
    notes = args.notes.read_text() if args.notes else current_notes(folder / "MODEL_CARD.md")
    extra = dict(item.split("=", 1) for item in args.extra)
    path = write_model_card(folder, folder / "evaluation", folder / "predictor.pt", notes,
                            extra or None)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
