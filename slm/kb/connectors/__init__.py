"""Document sources behind one interface (`base.Source`): a local folder, a website crawl, an S3-compatible
bucket, a Git repository at a ref. `spec.open_source` picks one from what the user typed."""
