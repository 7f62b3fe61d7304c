from hypothesis import strategies as st

#: Set sizes including empty and singleton sets, several sets per batch.
set_sizes = st.lists(st.integers(min_value=0, max_value=6), min_size=1,
                     max_size=5)
