"""A small blog in the shape of Flask's tutorial: an app factory, two blueprints, SQLite.

flask --app flaskr init-db
flask --app flaskr run --debug
"""

import os

from flask import Flask

VERSION = "1"


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY="dev",
        DATABASE=os.path.join(app.instance_path, "flaskr.sqlite"),
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)  # instance/config.py, when deployed
    else:
        app.config.from_mapping(test_config)
    os.makedirs(app.instance_path, exist_ok=True)

    @app.context_processor
    def served_by():
        return {"pid": os.getpid(), "version": VERSION}

    from . import db

    db.init_app(app)

    from . import auth, blog

    app.register_blueprint(auth.bp)
    app.register_blueprint(blog.bp)
    app.add_url_rule("/", endpoint="index")

    @app.route("/boom")
    def boom():
        raise RuntimeError("boom: a bug in a view")

    return app
