-- A ledger made by the release before migrations (create_all, commit a65d68e), with a paid
-- registration: tests/test_migrations.py upgrades it.
BEGIN TRANSACTION;
CREATE TABLE activities (
	id VARCHAR(64) NOT NULL, 
	event_id VARCHAR(64) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	title VARCHAR(200) NOT NULL, 
	park VARCHAR(120) NOT NULL, 
	age_group VARCHAR(60) NOT NULL, 
	starts_on DATE NOT NULL, 
	ends_on DATE NOT NULL, 
	price_cents INTEGER NOT NULL, 
	capacity INTEGER NOT NULL, 
	min_age INTEGER, 
	max_age INTEGER, 
	class_min INTEGER, 
	class_max INTEGER, 
	childcare BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(event_id) REFERENCES registration_events (id)
);
INSERT INTO "activities" VALUES('w1','ete-2026','day_camp','Semaine 1','Parc A','7-8 ans','2026-06-29','2026-07-03',12500,10,7,8,NULL,NULL,1);
CREATE TABLE cart_items (
	id INTEGER NOT NULL, 
	cart_id VARCHAR(100) NOT NULL, 
	activity_id VARCHAR(64) NOT NULL, 
	participant VARCHAR(32) NOT NULL, 
	price_cents INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (cart_id, activity_id, participant), 
	FOREIGN KEY(cart_id) REFERENCES carts (id), 
	FOREIGN KEY(activity_id) REFERENCES activities (id), 
	FOREIGN KEY(participant) REFERENCES members (id)
);
CREATE TABLE carts (
	id VARCHAR(100) NOT NULL, 
	event_id VARCHAR(64) NOT NULL, 
	client_number VARCHAR(32), 
	status VARCHAR(16) NOT NULL, 
	hold_expires_at_ms BIGINT NOT NULL, 
	extension_used BOOLEAN NOT NULL, 
	payer_member VARCHAR(32), 
	payer_email VARCHAR(254), 
	conditions_accepted_at_ms BIGINT, 
	payment_key VARCHAR(100), 
	locked_until_ms BIGINT, 
	cart_number VARCHAR(16), 
	owner_number VARCHAR(16), 
	total_cents BIGINT, 
	paid_cents BIGINT, 
	amount_due_cents BIGINT, 
	card_brand VARCHAR(16), 
	card_last4 VARCHAR(4), 
	settled_at_ms BIGINT, 
	created_at_ms BIGINT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(event_id) REFERENCES registration_events (id), 
	FOREIGN KEY(client_number) REFERENCES families (client_number), 
	UNIQUE (cart_number)
);
INSERT INTO "carts" VALUES('ete-2026/T1','ete-2026','100234','paid',0,0,'M1','anne.roy@example.org',NULL,'key-0001',NULL,'12345678','ABCDEFGH',12500,12500,0,'visa','4242',1780000000000,1780000000000);
CREATE TABLE families (
	client_number VARCHAR(32) NOT NULL, 
	principal_phone VARCHAR(20) NOT NULL, 
	email VARCHAR(254), 
	PRIMARY KEY (client_number)
);
INSERT INTO "families" VALUES('100234','+14188392002','anne.roy@example.org');
CREATE TABLE members (
	id VARCHAR(32) NOT NULL, 
	client_number VARCHAR(32) NOT NULL, 
	first_name VARCHAR(100) NOT NULL, 
	last_name VARCHAR(100) NOT NULL, 
	birth_date DATE NOT NULL, 
	relationship VARCHAR(32) NOT NULL, 
	class_level INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(client_number) REFERENCES families (client_number)
);
INSERT INTO "members" VALUES('M1','100234','Anne','Roy','1985-01-01','responsible',NULL);
INSERT INTO "members" VALUES('M2','100234','Léa','Roy','2018-03-01','child',2);
CREATE TABLE outbox (
	id INTEGER NOT NULL, 
	cart_id VARCHAR(100) NOT NULL, 
	recipient VARCHAR(254) NOT NULL, 
	subject VARCHAR(300) NOT NULL, 
	body TEXT NOT NULL, 
	created_at_ms BIGINT NOT NULL, 
	sent_at_ms BIGINT, 
	attempts INTEGER NOT NULL, 
	last_error VARCHAR(500), 
	PRIMARY KEY (id), 
	FOREIGN KEY(cart_id) REFERENCES carts (id)
);
CREATE TABLE payments (
	idempotency_key VARCHAR(100) NOT NULL, 
	cart_id VARCHAR(100) NOT NULL, 
	amount_cents BIGINT NOT NULL, 
	currency VARCHAR(3) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	decline_reason VARCHAR(64), 
	brand VARCHAR(16) NOT NULL, 
	last4 VARCHAR(4) NOT NULL, 
	provider VARCHAR(32) NOT NULL, 
	provider_reference VARCHAR(64), 
	created_at_ms BIGINT NOT NULL, 
	settled_at_ms BIGINT, 
	PRIMARY KEY (idempotency_key)
);
INSERT INTO "payments" VALUES('key-0001','ete-2026/T1',12500,'CAD','approved',NULL,'visa','4242','sandbox','sbx_1',1780000000000,1780000000000);
CREATE TABLE provider_slots (
	id INTEGER NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE registration_events (
	id VARCHAR(64) NOT NULL, 
	title VARCHAR(200) NOT NULL, 
	currency VARCHAR(3) NOT NULL, 
	timezone VARCHAR(64) NOT NULL, 
	payment_deferred BOOLEAN NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "registration_events" VALUES('ete-2026','Camp de jour 2026','CAD','America/Toronto',0);
CREATE TABLE registrations (
	id INTEGER NOT NULL, 
	activity_id VARCHAR(64) NOT NULL, 
	participant VARCHAR(32) NOT NULL, 
	cart_id VARCHAR(100) NOT NULL, 
	price_cents INTEGER NOT NULL, 
	confirmed_at_ms BIGINT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (activity_id, participant), 
	FOREIGN KEY(activity_id) REFERENCES activities (id), 
	FOREIGN KEY(participant) REFERENCES members (id), 
	FOREIGN KEY(cart_id) REFERENCES carts (id)
);
INSERT INTO "registrations" VALUES(1,'w1','M2','ete-2026/T1',12500,1780000000000);
CREATE TABLE sandbox_card_tokens (
	token VARCHAR(64) NOT NULL, 
	number VARCHAR(19) NOT NULL, 
	expiry VARCHAR(7) NOT NULL, 
	cvv VARCHAR(4) NOT NULL, 
	created_at_ms BIGINT NOT NULL, 
	PRIMARY KEY (token)
);
CREATE TABLE sandbox_charges (
	idempotency_key VARCHAR(100) NOT NULL, 
	amount_cents BIGINT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	reason VARCHAR(64), 
	reference VARCHAR(64) NOT NULL, 
	created_at_ms BIGINT NOT NULL, 
	PRIMARY KEY (idempotency_key)
);
CREATE TABLE waiting_list (
	id INTEGER NOT NULL, 
	activity_id VARCHAR(64) NOT NULL, 
	participant VARCHAR(32) NOT NULL, 
	client_number VARCHAR(32) NOT NULL, 
	joined_at_ms BIGINT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (activity_id, participant), 
	FOREIGN KEY(activity_id) REFERENCES activities (id), 
	FOREIGN KEY(participant) REFERENCES members (id), 
	FOREIGN KEY(client_number) REFERENCES families (client_number)
);
CREATE INDEX ix_activities_event_park_age ON activities (event_id, park, age_group);
CREATE INDEX ix_members_client_number ON members (client_number);
CREATE INDEX ix_cart_items_cart_id ON cart_items (cart_id);
CREATE INDEX ix_cart_items_activity_cart ON cart_items (activity_id, cart_id);
CREATE INDEX ix_registrations_cart_id ON registrations (cart_id);
CREATE INDEX ix_payments_cart_id ON payments (cart_id);
COMMIT;
