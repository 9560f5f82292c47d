"""Airflow DAG `fashion_mnist_nightly`: the Fashion-MNIST PyTorch CNN, built by the shared factory."""

from mlops_onnx.dag_factory import nightly_dag

dag = nightly_dag("fashion_mnist_cnn")
