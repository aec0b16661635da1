"""Grounding: where each extracted value is on its page (OCR words), and which values are nowhere on it.

normalise: how a value and a page's words are compared (text forms, date/money/height variants).
locate: each value to the words that show it → {pointer: Location}.
verify: the value_on_page check and the per-field confidence that folds in the found-on-page score.
"""
