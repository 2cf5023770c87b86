"""The service layer's two constants: the data directory's name, the JSON contract's version."""

DIRNAME = ".milestones"
SCHEMA = 1  # the "schema" field of every --json view (README, "The JSON contract")
