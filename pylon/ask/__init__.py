"""`pylon ask`: a question answered by sub-queries over a repo map (issue 13)."""
