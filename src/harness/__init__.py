"""The machinery that runs and reports the study, which a reader of the experiment can skip: every
option declared once (config), run folders (run), checkpoints, the one-line errors, concurrent runs
within a budget (scheduler) and the results tables (report)."""
