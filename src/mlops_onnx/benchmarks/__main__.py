import sys

from mlops_onnx.benchmarks.cli import main

sys.exit(main())
