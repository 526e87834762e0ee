"""``python -m src.scores``: the table of the scores in docs/scores.md."""

from src.scores import SCORES
from src.scores.registry import markdown_table

if __name__ == "__main__":
    print(markdown_table(SCORES))
