# The Triton server image (`rapport-triton`): NGC's tritonserver plus what the
# Python-backend models import beyond numpy (onnxruntime and tokenizers for the
# encoder, vaderSentiment for sentiment), at the versions constraints-triton.txt
# pins for the local stack. The models themselves come from the rapport-models image.
#   docker build -f models/triton.Dockerfile -t rapport-triton .
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

FROM ${TRITON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CONSTRAINT=/opt/rapport/constraints-triton.txt
COPY constraints-triton.txt /opt/rapport/constraints-triton.txt
# The same pins as constraints-triton.txt (tests/deploy/test_images.py checks they agree).
RUN python3 -m pip install onnxruntime==1.32.0 tokenizers==0.23.3 vaderSentiment==3.3.2 \
    && python3 -c "import onnxruntime, tokenizers, vaderSentiment"
# The chart runs every pod as 10001 (default.runAsUser); the image says the same.
USER 10001:10001
