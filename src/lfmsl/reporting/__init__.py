"""Tables, statistics and figures made from finished runs."""
