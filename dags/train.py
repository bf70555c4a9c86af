"""
### train

Runs when the marts are rebuilt (`recomart_marts`). Splits the interactions in time (train <
validation < test window: the rating pairs of `marts.user_item_ratings`, or for feeds with repeat
purchases such as UCI the events of `marts.user_item_events`, so repeat purchases stay in training
and count in the test window), tunes `surprise.SVD(biased=True)` on validation (seeded: the same data
gives the same model) and fits the hybrid's blend weights and component options (SVD, item-to-item,
content, buy-again when the feed allows repeats, popularity) on the same window with the tuned SVD
(with product embeddings in `reco.item_embeddings`, the content component's TF-IDF, half-embedding and
embedding-only variants are tried too and kept only if the validation window prefers them), then scores
the blend, each component, popularity and the current champion's blend once on the test window. Logs
params (`weight_<component>`), headline metrics and the at-K curves (one metric per
family, step = K), the blend fit (`blend.json`, with each content variant's validation nDCG, also
logged as `valid_content_<variant>_<blend|alone>_ndcg`) and registers the fitted hybrid as an MLflow pyfunc
(Postgres tracking and registry). Settings: `recomart.model.config.TrainingConfig.from_settings`.

It also fits the learned ranker (LightGBM LambdaRank over the candidate generators, with the Feast
user and item features read point-in-time at the validation cutoff) and registers whichever of the
ranker and the blend wins on validation (`recomart.model.ranker_stage`; `RECOMART_TRAIN_RANKER`).

The version gets alias `champion` only when its registered strategy (ranker or blend) beats popularity
and the champion on the test window, otherwise `challenger`; the decision, reason (naming the strategy)
and weights are in the log and in `ops.model_promotions`. The recommend DAG ranks through the champion.

The SVD search fans out (dynamic task mapping), with the same result as one process for the same
inputs and seed:

- `prepare` (setup) checks the inputs (below), reads the marts once, and stages the round's catalogue,
  prepared pairs and split (every part) as Parquet in a folder of this DAG run
  (`<state>/staging/train/<run>`, shared by the workers as the MLflow artifacts are), and opens this
  DAG run's MLflow parent run;
- `trial` (one mapped task per candidate of the seeded search, on any worker) fits one SVD on the
  train part, scores it on validation, keeps its factors in the folder and logs a nested MLflow run
  under the parent (params, validation metrics); a trial other than the first that starts after the
  tuning budget is spent is skipped;
- `choose` (the reduce) picks the best trial on the validation metric, the lowest trial index on ties;
- `blend` fits the blend's weights and options on validation with the chosen SVD while `refit` (one
  mapped task per window) refits that SVD on train + validation and on all the data;
- `tune_ranker_generator` (one mapped task per generator, EASE and RP3β, beside the trials: it needs
  only the staged split) chooses that generator's parameters on validation;
- `fit_ranker` (after the blend and the tuning, beside the refits) fits the learned ranker on the
  train part, its SVD generator being the chosen trial's factors, and compares it with the blend on
  validation;
- after the blend and the refits, `score_test_window` scores every contender on the test window and
  fits the hybrid to register; after `fit_ranker` and the refits, `ranker_test_window` scores the
  ranker once on the test window while `ranker_serving_fit` refits its generators on all the data
  (only when the ranker is registered); all of them read the refitted factors instead of fitting them
  again;
- `register` assembles the round, gates it and registers the version into the parent run;
- `discard_staging` (teardown) removes the folder and ends the parent run as failed unless a version
  was registered into it.

Unchanged inputs do not retrain: when the marts' and the item vectors' digests and the training settings
equal those of the last registered version (MLflow tag and `ops.model_promotions.inputs_digest`),
`prepare` logs "inputs unchanged since version N" and ends skipped (and so do the tasks after it).
Each version is tagged with the DAG run that trained it (`airflow_run_id`), which is how the demo's
report names the version its own run registered.

`register` emits `recomart_model`, which starts `recommend` (not when skipped).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task, teardown
from recomart_dag_utils.assets import MARTS, MODEL
from recomart_dag_utils.defaults import DEFAULT_ARGS, skip_when_unchanged, warehouse_dsn

REFIT_WINDOWS = ("train_valid", "all")  # recomart.tasks.train_round.REFIT_WINDOWS
RANKER_GENERATORS = ("ease", "rp3beta")  # recomart.tasks.train_ranker.RANKER_GENERATORS


@dag(
    dag_id="train",
    schedule=[MARTS],
    start_date=pendulum.datetime(2010, 12, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recomart", "mlflow", "model"],
    doc_md=__doc__,
)
def train():
    @task
    def prepare(dag_run=None) -> list[dict]:
        """Skip when the inputs are unchanged; else stage the round and its split, open the MLflow parent
        run, and plan one trial per candidate."""
        from recomart.config import settings
        from recomart.tasks.train_trials import prepare_trials

        plan = prepare_trials(settings(), warehouse_dsn(), airflow_run_id=dag_run.run_id)
        skip_when_unchanged(plan)
        return plan["trials"]

    # a trial is cheap to redo and its retry replaces its nested run: retry it sooner than the default
    @task(retry_delay=timedelta(seconds=10))
    def trial(spec: dict) -> dict:
        """Fit one SVD candidate on the staged train part, score it on validation, log a nested run."""
        from recomart.config import settings
        from recomart.tasks.train_trials import run_one_trial

        return run_one_trial(settings(), spec)

    @task
    def choose(results: list[dict]) -> dict:
        """The best trial on validation (the lowest index on ties)."""
        from recomart.config import settings
        from recomart.tasks.train_trials import choose_params

        return choose_params(settings(), list(results[:]))  # one XCom read

    @task
    def blend(specs: list[dict], chosen: dict, dag_run=None) -> dict:
        """Fit the blend's weights and component options on validation with the chosen SVD."""
        from recomart.config import settings
        from recomart.tasks.train_round import fit_blend

        return fit_blend(settings(), list(specs), chosen, airflow_run_id=dag_run.run_id)

    @task
    def refit(specs: list[dict], chosen: dict, window: str, dag_run=None) -> dict:
        """Refit the chosen SVD on one window: train + validation, or all the data (the served SVD)."""
        from recomart.config import settings
        from recomart.tasks.train_round import refit_svd

        return refit_svd(settings(), list(specs), chosen, window, airflow_run_id=dag_run.run_id)

    @task
    def score_test_window(specs: list[dict], chosen: dict, dag_run=None) -> dict:
        """Score the blend, each component, popularity and the champion once on the test window; fit the
        hybrid to register."""
        from recomart.config import settings
        from recomart.tasks.train_round import score_test_window

        return score_test_window(settings(), list(specs), chosen, airflow_run_id=dag_run.run_id)

    @task
    def tune_ranker_generator(specs: list[dict], name: str, dag_run=None) -> dict:
        """Choose one of the ranker's generators' parameters (EASE or RP3β) on validation."""
        from recomart.config import settings
        from recomart.tasks.train_ranker import tune_ranker_generator

        return tune_ranker_generator(settings(), list(specs), name, airflow_run_id=dag_run.run_id)

    @task
    def fit_ranker(specs: list[dict], chosen: dict, dag_run=None) -> dict:
        """Fit the learned ranker on point-in-time features and compare it with the blend on validation."""
        from recomart.config import settings
        from recomart.tasks.train_ranker import fit_ranker

        return fit_ranker(settings(), list(specs), chosen, airflow_run_id=dag_run.run_id)

    @task
    def ranker_test_window(specs: list[dict], chosen: dict, dag_run=None) -> dict:
        """Score the fitted ranker once on the test window."""
        from recomart.config import settings
        from recomart.tasks.train_ranker import ranker_test_window

        return ranker_test_window(settings(), list(specs), chosen, airflow_run_id=dag_run.run_id)

    @task
    def ranker_serving_fit(specs: list[dict], chosen: dict, dag_run=None) -> dict:
        """Refit the ranker's generators on all the data, when the ranker is what is registered."""
        from recomart.config import settings
        from recomart.tasks.train_ranker import ranker_serving_fit

        return ranker_serving_fit(settings(), list(specs), chosen, airflow_run_id=dag_run.run_id)

    @task(outlets=[MODEL])
    def register(specs: list[dict], chosen: dict, dag_run=None, outlet_events=None) -> dict:
        """Assemble the round, gate it against popularity and the champion, register it (tagged with this
        DAG run's id)."""
        from recomart.config import settings
        from recomart.tasks.train_round import register_round

        summary = register_round(settings(), warehouse_dsn(), list(specs), chosen, airflow_run_id=dag_run.run_id)
        outlet_events[MODEL].extra = summary
        return summary

    @teardown
    def discard_staging(specs: list[dict]) -> None:
        """Remove the run's staged round; end its MLflow parent run as failed unless a version was registered."""
        from recomart.config import settings
        from recomart.tasks.train_trials import discard_trials

        discard_trials(settings(), list(specs))

    specs = prepare()
    tuned_generators = tune_ranker_generator.partial(specs=specs).expand(name=list(RANKER_GENERATORS))
    chosen = choose(trial.expand(spec=specs))
    blended = blend(specs, chosen)
    refits = refit.partial(specs=specs, chosen=chosen).expand(window=list(REFIT_WINDOWS))
    scored = score_test_window(specs, chosen)
    ranker = fit_ranker(specs, chosen)
    ranker_halves = [ranker_test_window(specs, chosen), ranker_serving_fit(specs, chosen)]
    registered = register(specs, chosen)
    [blended, refits] >> scored
    [blended, tuned_generators] >> ranker  # beside the refits: it fits on the train part only
    ranker >> ranker_halves
    refits >> ranker_halves
    [scored, *ranker_halves] >> registered
    registered >> discard_staging(specs).as_teardown(setups=specs)


train()
