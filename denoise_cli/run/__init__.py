"""A run: the frozen job, the per-image transforms, chunk workers, the helper pool, the local
and Ray runners, and scoring outputs against references."""
