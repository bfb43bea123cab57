"""The only readers of input: local CSV and Parquet files, and URL sources."""
