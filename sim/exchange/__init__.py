"""Exchange layer: the client that deploys and calls the margin contracts, the account mirror
kept from the exchange's events, and the read-only chain view that agents are handed."""
