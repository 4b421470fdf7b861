/*
 * watermark.hpp: the sink's LSN watermark, the Bottled Water way.
 *
 * PostgreSQL may forget WAL only up to an LSN whose changes Kafka holds. Events of many
 * transactions are in flight at once and Kafka acknowledges them in any order (different
 * partitions, different brokers, retries), so "the last acknowledged event" means
 * nothing. What does mean something is a prefix: the watermark is the commit LSN of the
 * newest transaction such that it and every transaction before it (in commit order) has
 * been completely handed over (ended) and every one of its events acknowledged.
 *
 * A transaction that produced no event is complete as soon as it ends, so it moves the
 * watermark as soon as everything before it is acknowledged: the slot never holds WAL
 * for tables nobody streams. A transaction with a failed event is never complete: the
 * watermark stops in front of it for good and the stream restarts from the slot, which
 * sends that transaction again. After a fatal producer error the watermark freezes
 * entirely (halt): nothing the producer says afterwards is trusted.
 *
 * This class knows nothing of Kafka so that unit tests can drive it through every order
 * of acknowledgements. Each message carries the id of its transaction as its opaque; ids
 * are dense, so a delivery report finds its transaction by index and a report for an id
 * the ledger does not hold is detected instead of dereferencing freed memory.
 *
 * Not thread-safe: the sink calls it only from the stream worker's thread (librdkafka
 * serves delivery reports on the thread that polls).
 */
#ifndef WALSHIP_WATERMARK_HPP
#define WALSHIP_WATERMARK_HPP

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <string>

namespace walship
{

/* "X/X", the way PostgreSQL prints a pg_lsn. */
inline std::string format_lsn(uint64_t lsn)
{
    char text[32];
    std::snprintf(text, sizeof(text), "%" PRIX32 "/%" PRIX32, static_cast<uint32_t>(lsn >> 32),
                  static_cast<uint32_t>(lsn));
    return text;
}

class DeliveryWatermark
{
  public:
    using TransactionId = uint64_t;

    /* Opens the next transaction in commit order. False (and why) when one is still
     * open or the commit LSN goes backwards: the caller has a bug and must restart. */
    bool begin(uint64_t commit_lsn, std::string &why)
    {
        if (open_) {
            why = "transaction with commit LSN " + format_lsn(commit_lsn) +
                  " begun while the one with commit LSN " + format_lsn(pending_.back().commit_lsn) +
                  " is still open";
            return false;
        }
        if (commit_lsn < last_commit_lsn_) {
            why = "transaction with commit LSN " + format_lsn(commit_lsn) +
                  " begun after one with commit LSN " + format_lsn(last_commit_lsn_) +
                  ": transactions must come in commit order";
            return false;
        }
        pending_.push_back(Transaction{commit_lsn, 0, false, false});
        last_commit_lsn_ = commit_lsn;
        open_ = true;
        return true;
    }

    /* Closes the open transaction: no more events will be produced for it. */
    bool end(uint64_t commit_lsn, std::string &why)
    {
        if (!open_) {
            why =
                "transaction with commit LSN " + format_lsn(commit_lsn) + " ended but none is open";
            return false;
        }
        Transaction &txn = pending_.back();
        if (txn.commit_lsn != commit_lsn) {
            why = "transaction with commit LSN " + format_lsn(commit_lsn) +
                  " ended while the open one has commit LSN " + format_lsn(txn.commit_lsn);
            return false;
        }
        txn.ended = true;
        open_ = false;
        advance();
        return true;
    }

    bool has_open_transaction() const
    {
        return open_;
    }

    /* Only meaningful while has_open_transaction(). */
    uint64_t open_commit_lsn() const
    {
        return open_ ? pending_.back().commit_lsn : 0;
    }

    TransactionId open_transaction() const
    {
        return first_id_ + pending_.size() - 1;
    }

    /* One more event of the open transaction was handed to Kafka. */
    void event_produced()
    {
        if (!open_)
            return;
        ++pending_.back().outstanding;
        ++in_flight_;
    }

    /* Kafka acknowledged an event. False when the ledger holds no such transaction. */
    bool event_acked(TransactionId id)
    {
        Transaction *txn = find(id);
        if (txn == nullptr || txn->outstanding == 0)
            return false;
        --txn->outstanding;
        --in_flight_;
        advance();
        return true;
    }

    /* An event will never be acknowledged: its transaction can never be confirmed. */
    bool event_failed(TransactionId id)
    {
        Transaction *txn = find(id);
        if (txn == nullptr || txn->outstanding == 0)
            return false;
        --txn->outstanding;
        --in_flight_;
        txn->failed = true;
        failed_ = true;
        return true;
    }

    /* The open transaction lost an event before it reached Kafka (produce failed). */
    void fail_open_transaction()
    {
        if (!open_)
            return;
        pending_.back().failed = true;
        failed_ = true;
    }

    /* A fatal producer error: confirm nothing more, whatever reports still arrive. */
    void halt()
    {
        halted_ = true;
    }

    /* Commit LSN of the newest fully acknowledged prefix of transactions; 0 = none. */
    uint64_t watermark() const
    {
        return watermark_;
    }

    /* No transaction open or waiting for acknowledgements. */
    bool idle() const
    {
        return pending_.empty();
    }

    /* Events handed to Kafka and not yet reported (acknowledged or failed). */
    uint64_t in_flight() const
    {
        return in_flight_;
    }

    /* A transaction failed or the producer halted: the watermark will not move again
     * past the failure. */
    bool failed() const
    {
        return failed_ || halted_;
    }

    size_t pending_transactions() const
    {
        return pending_.size();
    }

  private:
    struct Transaction {
        uint64_t commit_lsn;
        uint64_t outstanding; /* produced, not yet reported */
        bool ended;
        bool failed;
    };

    Transaction *find(TransactionId id)
    {
        if (id < first_id_ || id - first_id_ >= pending_.size())
            return nullptr;
        return &pending_[id - first_id_];
    }

    void advance()
    {
        while (!halted_ && !pending_.empty()) {
            const Transaction &oldest = pending_.front();
            if (!oldest.ended || oldest.outstanding != 0 || oldest.failed)
                break;
            watermark_ = oldest.commit_lsn;
            pending_.pop_front();
            ++first_id_;
        }
    }

    /* Transactions not yet below the watermark, oldest first; a deque keeps the
     * elements in place while both ends move. */
    std::deque<Transaction> pending_;
    TransactionId first_id_ = 0; /* id of pending_.front() */
    uint64_t watermark_ = 0;
    uint64_t last_commit_lsn_ = 0;
    uint64_t in_flight_ = 0;
    bool open_ = false;
    bool failed_ = false;
    bool halted_ = false;
};

} // namespace walship

#endif /* WALSHIP_WATERMARK_HPP */
