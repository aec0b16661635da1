"""Synthetic documents (receipts, US driver's licences, US bank checks) with exact ground truth.

Everything is drawn from an explicit seed, so one seed always gives the same bytes. The entry point for a
whole folder is `bayou.synthetic.dataset.make_dataset`; the per-type generators live in `receipt`,
`drivers_license` and `check`.
"""
