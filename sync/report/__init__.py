"""The run report as one value (model), one column and note list (columns), and its
renderings: a table (table), JSON (``RunReport.to_dict``) and Markdown (markdown)."""
