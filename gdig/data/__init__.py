"""Data: readers, validation, prompts and loss masks, languages and noise injection (the demo corpus is gdig.demo)."""
