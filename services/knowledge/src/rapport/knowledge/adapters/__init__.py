"""The outside world: the vector store, the encoder on Triton, the topic."""
