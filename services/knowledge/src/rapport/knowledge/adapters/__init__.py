"""One module per outside system: the encoder on Triton (encoder) and the vector store
(store). The topic is consumed by the stream processor (``stream.py``)."""
