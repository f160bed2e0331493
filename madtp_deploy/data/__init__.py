"""Data: the generated scenes task, BLIP retrieval annotation files, preprocessing, tokenizers."""
