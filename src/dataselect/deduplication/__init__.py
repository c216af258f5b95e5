"""The dedup stage: exact, near (MinHash LSH) and semantic (SemDeDup) duplicates marked per
row, so the sample stage draws only kept rows."""
