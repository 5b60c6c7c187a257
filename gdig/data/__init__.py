"""Data: readers, validation, prompts and loss masks, the demo corpus and noise injection."""
