"""Plotly figure builders: plain arrays in, figures out. No torch, no Streamlit."""
