"""Packages: ``vpt_agent`` (and its subpackages) plus ``vpt_envs``, whose source folder is ``envs/``.

Everything else is in setup.cfg; this file exists only because setup.cfg cannot combine ``find:`` with a
renamed package directory.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["vpt_agent", "vpt_agent.*"]) + ["vpt_envs"],
    package_dir={"vpt_envs": "envs"},
)
