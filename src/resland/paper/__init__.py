"""The paper's claims C1–C5 (docs/theory.md §2), their reproductions and the HTML report."""
