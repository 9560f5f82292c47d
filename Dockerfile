# Airflow image for docker-compose.yaml: the official Airflow 3.3.2 image plus requirements.lock and this package.
#
#   docker compose build                                       # both variants (cpu for most services, gpu worker)
#   GIT_COMMIT=$(git rev-parse HEAD) docker compose build      # records the commit as MLOPS_CODE_VERSION
#   Without GIT_COMMIT the code version is `src.<hash>` of the package built into the image (tracking.code_version),
#   so a code change still retrains; `unknown` is never a default (a night on it always trains, and says so).
#   docker build --build-arg VARIANT=gpu -t mlops-onnx/airflow:dev-gpu .
#
# VARIANT=cpu: torch's CPU wheel (torch==2.13.0+cpu from the PyTorch CPU index, as in `make setup`);
#              onnxruntime-gpu from the lock, which falls back to the CPU provider.
# VARIANT=gpu: torch==2.13.0 from PyPI (its CUDA 13 build, CUDA libraries as nvidia-* wheels) and
#              onnxruntime-gpu[cuda,cudnn] so ONNX Runtime's CUDA provider has its libraries too.
#              The NVIDIA driver comes from the host (NVIDIA Container Toolkit).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

ARG VARIANT=cpu
ARG GIT_COMMIT=
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
# What the compose setup needs beyond requirements.lock (the lock is the embedded `make demo` setup):
# CeleryExecutor, the Postgres metadata DB, the Redis broker and the FAB auth manager, as in Airflow's
# official docker-compose. The official image ships them already; pinning them here makes pip resolve
# them together with the lock (checked with `pip install --dry-run -c requirements.lock`: these versions
# move no pin of the lock).
ARG AIRFLOW_COMPOSE_PROVIDERS="apache-airflow-providers-celery==3.26.0 apache-airflow-providers-fab==3.10.2 apache-airflow-providers-postgres==7.1.1 apache-airflow-providers-redis==4.7.1"

USER root
# MLOPS_HOME (a named volume in compose takes its ownership from here) and the source folder.
RUN mkdir -p /opt/mlops /opt/mlops-src \
 && chown airflow:0 /opt/mlops /opt/mlops-src \
 && chmod 0775 /opt/mlops
USER airflow
WORKDIR /opt/mlops-src

# Dependencies first (changes rarely), the package's own code last.
COPY --chown=airflow:0 requirements.lock pyproject.toml README.md ./
RUN set -eux; \
    case "${VARIANT}" in \
      cpu) index_args="--extra-index-url ${TORCH_CPU_INDEX_URL}"; gpu_extras="" ;; \
      gpu) index_args=""; gpu_extras="onnxruntime-gpu[cuda,cudnn]==1.31.1" ;; \
      *) echo "VARIANT must be cpu or gpu, not '${VARIANT}'" >&2; exit 1 ;; \
    esac; \
    pip install --no-cache-dir ${index_args} \
      "apache-airflow==${AIRFLOW_VERSION}" -r requirements.lock ${AIRFLOW_COMPOSE_PROVIDERS} ${gpu_extras}; \
    python -c "import sys, torch; cuda = torch.version.cuda; print('torch', torch.__version__, 'CUDA', cuda); \
sys.exit(0 if (cuda is None) == ('${VARIANT}' == 'cpu') else 'torch build does not match VARIANT=${VARIANT}')"; \
    python -c "import onnxruntime as ort; print('onnxruntime', ort.__version__, ort.get_available_providers())"

COPY --chown=airflow:0 src ./src
RUN pip install --no-cache-dir --no-deps . \
 && rm -rf build src/*.egg-info \
 && python -c "import mlops_onnx.catalog"

ENV MLOPS_HOME=/opt/mlops \
    MLOPS_CODE_VERSION=${GIT_COMMIT} \
    MLOPS_IMAGE_VARIANT=${VARIANT}
LABEL org.opencontainers.image.title="mlops-onnx-airflow" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.version="${VARIANT}"
WORKDIR /opt/airflow
