"""Floor 4: the training system — `train_and_evaluate`, the jitted steps, the CLI."""
