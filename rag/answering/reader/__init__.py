"""The answer-span reader: candidate spans, their features, the neural head and the shipped weights (model/)."""
