"""What every job shares: flags and specs, start-up, checkpoints, training, the finetuning recipe, results."""
