"""Answer questions from the ingested corpus with numbered citations to exact passages."""
