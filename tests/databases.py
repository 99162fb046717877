"""The databases that the storage tests run on (.ci/run starts the servers)."""

import optuna

from helion_optuna.storage import open_storage

SERVERS = {"postgresql": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
           "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test"}


def fresh(url: str, study_name: str) -> None:
    """Delete the study if an earlier run left it."""
    storage = open_storage(url)
    if study_name in {s.study_name for s in storage.get_all_studies()}:
        optuna.delete_study(study_name=study_name, storage=storage)
