-- create_all at de9fa2d (create_all_last), sqlite: written by generate.py
CREATE TABLE accounts (
	id INTEGER NOT NULL, 
	name VARCHAR(96) NOT NULL, 
	name_key VARCHAR(96), 
	kind VARCHAR(8) NOT NULL, 
	fullname VARCHAR(200) NOT NULL, 
	is_admin BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);

CREATE UNIQUE INDEX uq_accounts_name_key ON accounts (name_key);

CREATE TABLE nodes (
	name VARCHAR(100) NOT NULL, 
	address VARCHAR(255) NOT NULL, 
	cpus DOUBLE NOT NULL, 
	memory_gb DOUBLE NOT NULL, 
	gpus INTEGER NOT NULL, 
	accelerator VARCHAR(32), 
	labels VARCHAR NOT NULL, 
	zerogpu_url VARCHAR, 
	cordoned BOOLEAN NOT NULL, 
	draining BOOLEAN NOT NULL, 
	lost_at DATETIME, 
	registered_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE spaces (
	id INTEGER NOT NULL, 
	owner VARCHAR(96) NOT NULL, 
	name VARCHAR(96) NOT NULL, 
	subdomain VARCHAR(200), 
	private BOOLEAN NOT NULL, 
	sdk VARCHAR(16), 
	hardware VARCHAR(32) NOT NULL, 
	sleep_time INTEGER, 
	paused BOOLEAN NOT NULL, 
	head_sha VARCHAR(40), 
	stage VARCHAR(24) NOT NULL, 
	error VARCHAR, 
	serving_sha VARCHAR(40), 
	artifact_dir VARCHAR, 
	direct_port INTEGER, 
	restart_nonce INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	last_modified DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (owner, name), 
	UNIQUE (direct_port)
);

CREATE UNIQUE INDEX uq_spaces_subdomain ON spaces (subdomain);

CREATE TABLE assignments (
	instance_id VARCHAR(200) NOT NULL, 
	space_id VARCHAR(200) NOT NULL, 
	sha VARCHAR(40) NOT NULL, 
	node VARCHAR(100) NOT NULL, 
	epoch INTEGER NOT NULL, 
	desired VARCHAR(8) NOT NULL, 
	hardware VARCHAR(32) NOT NULL, 
	spec VARCHAR NOT NULL, 
	reported VARCHAR(8) NOT NULL, 
	upstream_host VARCHAR(255), 
	upstream_port INTEGER, 
	pid INTEGER, 
	exit_reason VARCHAR, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (instance_id), 
	FOREIGN KEY(node) REFERENCES nodes (name) ON DELETE CASCADE
);

CREATE INDEX ix_assignments_node_desired ON assignments (node, desired);

CREATE INDEX ix_assignments_space_id ON assignments (space_id);

CREATE TABLE memberships (
	id INTEGER NOT NULL, 
	org_id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	role VARCHAR(8) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (org_id, user_id), 
	FOREIGN KEY(org_id) REFERENCES accounts (id) ON DELETE CASCADE, 
	FOREIGN KEY(user_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE passwords (
	account_id INTEGER NOT NULL, 
	hash VARCHAR(200) NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (account_id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE space_domains (
	id INTEGER NOT NULL, 
	space_id INTEGER NOT NULL, 
	domain VARCHAR(253) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(space_id) REFERENCES spaces (id) ON DELETE CASCADE, 
	UNIQUE (domain)
);

CREATE TABLE space_kv (
	id INTEGER NOT NULL, 
	space_id INTEGER NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	"key" VARCHAR(200) NOT NULL, 
	value VARCHAR NOT NULL, 
	description VARCHAR, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (space_id, kind, "key"), 
	FOREIGN KEY(space_id) REFERENCES spaces (id) ON DELETE CASCADE
);

CREATE TABLE tokens (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	digest VARCHAR(64) NOT NULL, 
	display_name VARCHAR(100) NOT NULL, 
	role VARCHAR(8) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(user_id) REFERENCES accounts (id) ON DELETE CASCADE, 
	UNIQUE (digest)
);

CREATE TABLE browser_sessions (
	id INTEGER NOT NULL, 
	digest VARCHAR(64) NOT NULL, 
	token_id INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (digest), 
	FOREIGN KEY(token_id) REFERENCES tokens (id) ON DELETE CASCADE
);

CREATE INDEX ix_browser_sessions_token_id ON browser_sessions (token_id);
