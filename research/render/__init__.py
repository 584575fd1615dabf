"""Showing results: console tables, plotly charts, HTML reports."""
