-- create_all at 9174d61~1 (before_name_keys), sqlite: written by generate.py
CREATE TABLE accounts (
	id INTEGER NOT NULL, 
	name VARCHAR(96) NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	fullname VARCHAR(200) NOT NULL, 
	is_admin BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);

CREATE TABLE spaces (
	id INTEGER NOT NULL, 
	owner VARCHAR(96) NOT NULL, 
	name VARCHAR(96) NOT NULL, 
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
