"""Reading sources: files into Articles (sources, cleaning, markup) and Articles into Chunks."""
