"""Airflow DAG `fake_news_nightly`: the fake-news Keras RNN classifier, built by the shared factory."""

from mlops_onnx.dag_factory import nightly_dag

dag = nightly_dag("fake_news_rnn")
