"""What happens beside the answer: mirroring, the prediction log, comparison reports (later issues)."""
