"""SQuAD v1.1 / v2.0 finetuning: windows and span decoding, the official scores, the job and the demo questions."""
