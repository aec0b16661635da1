# One image for every role (api, cpu worker, gpu worker); the command picks the role.
# GPU hosts (transformers engine): build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 for a
# CUDA torch. torch 2.13.0's CUDA builds are cu126 and cu130 (PyTorch's release matrix; there is no cu124):
# cu130 for Turing and newer (H100: sm_90) with a CUDA 13 driver, cu126 for older GPUs or drivers.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=""

RUN apt-get update \
 && apt-get install -y --no-install-recommends poppler-utils fonts-dejavu-core tesseract-ocr \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md ./
COPY bayou bayou
COPY extractor extractor
COPY schemas schemas
COPY storage storage
COPY workers workers
COPY api api
RUN pip install --no-cache-dir ".${EXTRAS}"

RUN useradd --create-home --uid 1000 bayou && mkdir -p /data /models && chown bayou /data /models
USER bayou
ENV BAYOU_DATA_DIR=/data HF_HOME=/models
EXPOSE 8000
CMD ["bayou", "serve", "--host", "0.0.0.0", "--port", "8000"]
