"""``python -m src.scores``: the README's table of the scores."""

from src.scores import SCORES
from src.scores.registry import markdown_table

if __name__ == "__main__":
    print(markdown_table(SCORES))
