"""The only Streamlit-aware part of rnn_demo: session state, job handles and widgets shared by pages."""
