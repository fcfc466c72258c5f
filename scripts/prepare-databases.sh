#!/usr/bin/env bash
# Prepare the local PostgreSQL and MariaDB for the test suite and the demo. Idempotent; run by `make test`.
#
# PostgreSQL trusts every loopback login on this machine, so a password could never be refused. We add a role with
# a password and a pg_hba.conf rule, ahead of the trust rules, that makes PostgreSQL check it; then reload.
set -euo pipefail

PG_ROLE=${SQLHTTP_TEST_PG_USER:-sqlhttp_test}
MY_USER=${SQLHTTP_TEST_MYSQL_USER:-sqlhttp_test}
# URL-special characters and non-ASCII, so every test exercises quoting and encoding of the password.
PASSWORD=${SQLHTTP_TEST_PASSWORD:-'p@ss:/#%?wörd✓'}
export PGCLIENTENCODING=UTF8
PSQL=(psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
MARIADB=(mariadb -h 127.0.0.1 -u root --default-character-set=utf8mb4)

"${PSQL[@]}" -c "SELECT 1" >/dev/null || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
"${MARIADB[@]}" -e "SELECT 1" >/dev/null || { echo "MariaDB is not reachable on 127.0.0.1:3306" >&2; exit 1; }

sql_password=${PASSWORD//\'/\'\'}
"${PSQL[@]}" <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${PG_ROLE}') THEN
    CREATE ROLE ${PG_ROLE} LOGIN CREATEDB;
  END IF;
END
\$\$;
SET password_encryption = 'scram-sha-256';
ALTER ROLE ${PG_ROLE} WITH LOGIN CREATEDB PASSWORD '${sql_password}';
SQL

hba_file=$("${PSQL[@]}" -c "SHOW hba_file")
rule_v4="host all ${PG_ROLE} 127.0.0.1/32 scram-sha-256"
rule_v6="host all ${PG_ROLE} ::1/128 scram-sha-256"
if ! grep -qxF "$rule_v4" "$hba_file"; then
  # Rules are matched top down: ours must come before the trust rules.
  { echo "# sqlhttp-middleware test suite: this role's password is checked"; echo "$rule_v4"; echo "$rule_v6";
    cat "$hba_file"; } > "$hba_file.sqlhttp"
  cat "$hba_file.sqlhttp" > "$hba_file"
  rm -f "$hba_file.sqlhttp"
  "${PSQL[@]}" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.5
fi

"${MARIADB[@]}" <<SQL
CREATE USER IF NOT EXISTS '${MY_USER}'@'%' IDENTIFIED BY '${sql_password}';
CREATE USER IF NOT EXISTS '${MY_USER}'@'localhost' IDENTIFIED BY '${sql_password}';
CREATE USER IF NOT EXISTS '${MY_USER}'@'127.0.0.1' IDENTIFIED BY '${sql_password}';
ALTER USER '${MY_USER}'@'%' IDENTIFIED BY '${sql_password}';
ALTER USER '${MY_USER}'@'localhost' IDENTIFIED BY '${sql_password}';
ALTER USER '${MY_USER}'@'127.0.0.1' IDENTIFIED BY '${sql_password}';
SQL

# Least privilege: all rights on the test suite's own databases (sqlhttp_test_*), nothing global: no FILE (so no
# INTO OUTFILE), no PROCESS, no SUPER. Revoked first, so a machine prepared by an older script is brought in line.
for host in '%' localhost 127.0.0.1; do
  "${MARIADB[@]}" <<SQL
REVOKE ALL PRIVILEGES, GRANT OPTION FROM '${MY_USER}'@'${host}';
GRANT ALL PRIVILEGES ON \`sqlhttp\\_test\\_%\`.* TO '${MY_USER}'@'${host}';
SQL
done
"${MARIADB[@]}" <<SQL
FLUSH PRIVILEGES;
SQL

# Both logins must now be refused with a wrong password and accepted with the right one.
if PGPASSWORD=wrong psql -h 127.0.0.1 -U "$PG_ROLE" -d postgres -tAc "SELECT 1" >/dev/null 2>&1; then
  echo "PostgreSQL accepted a wrong password for ${PG_ROLE}: the pg_hba.conf rule is not in effect" >&2; exit 1
fi
PGPASSWORD="$PASSWORD" psql -h 127.0.0.1 -U "$PG_ROLE" -d postgres -tAc "SELECT 1" >/dev/null
MYSQL_PWD="$PASSWORD" mariadb -h 127.0.0.1 -u "$MY_USER" --default-character-set=utf8mb4 -e "SELECT 1" >/dev/null
echo "databases ready: PostgreSQL role ${PG_ROLE} and MariaDB user ${MY_USER} (password checked)"
