"""Model stage: biased SVD (scikit-surprise) training, vectorised scoring, metrics and MLflow registry.

Submodules import their heavy dependencies (surprise, mlflow, numba) themselves, so importing this
package stays cheap; import what you need from ``recomart.model.<module>``.
"""
