# The OCR service in a container. Its install steps are the Makefile targets that CI runs (install, fonts),
# then the default model: the bundled models/crnn_zh_en.int8.onnx, or the demo chain's INT8 model built at
# image build time where the bundled one is absent.
#
#   docker build -t crnn-toolkit .
#   docker run --rm -p 127.0.0.1:5000:5000 crnn-toolkit
#   curl -F "file=@line.png" http://127.0.0.1:5000/ocr
#
# torch is pinned (torch==2.13.0, CPU). Where your pip would resolve it to the CUDA build, point it at a
# folder or index of CPU wheels: docker build --build-arg PIP_FIND_LINKS=... --build-arg PIP_EXTRA_INDEX_URL=...
FROM python:3.11-slim-bookworm

ARG PIP_FIND_LINKS=""
ARG PIP_EXTRA_INDEX_URL=""
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_FIND_LINKS=${PIP_FIND_LINKS} \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} \
    PYTHONUNBUFFERED=1

RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .

RUN make install fonts model && rm -rf /root/.cache/pip

# Inside the container the service must listen beyond its own loopback; publish it on the host's
# 127.0.0.1 (as above) unless you mean to expose it.
EXPOSE 5000
CMD ["make", "serve", "HOST=0.0.0.0", "PORT=5000"]
