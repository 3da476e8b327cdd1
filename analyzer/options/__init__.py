"""Options open interest from the venues, dealer positioning, and the dealer gamma map."""
