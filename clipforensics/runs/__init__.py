"""Run folders: what a fitted head or a fine-tuned tower leaves on disk, and how a reader turns it into a scorer.

The stages name their own files (heads/saved.py, lora/files.py, data/scores.py) and extract/tower.py rebuilds a
run's model from its cache's attributes. Here `records` reads what every run records (cache, validation threshold,
face-crop recipe), `base` says what a kind of run must know, `head` and `tuned` are the two kinds (a fitted head;
a fine-tuned tower, LoRA today) and `kinds` holds the one registry of run kinds that detect.py and the studies
open runs through.
"""
