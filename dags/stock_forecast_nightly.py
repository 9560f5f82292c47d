"""Airflow DAG `stock_forecast_nightly`: the stock-price Keras LSTM forecaster, built by the shared factory."""

from mlops_onnx.dag_factory import nightly_dag

dag = nightly_dag("stock_lstm")
