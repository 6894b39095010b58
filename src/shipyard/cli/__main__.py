from shipyard.cli.main import app

app(prog_name="shipyard")
