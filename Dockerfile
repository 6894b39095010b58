# shipyard's image for users with a registry: the same entrypoint and installed
# version as the one `shipyard dev image build` makes locally without a registry
# (tests/integration/test_images.py compares them).
#   docker build -t REGISTRY/shipyard:0.1.0 . && docker push REGISTRY/shipyard:0.1.0
#   shipyard install -c CTX --image REGISTRY/shipyard:0.1.0
FROM python:3.11-slim
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN pip install --no-cache-dir /src && rm -rf /src
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["shipyard"]
