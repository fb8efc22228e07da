"""One module per stage, each a Prefect flow that reads like the recipe."""
