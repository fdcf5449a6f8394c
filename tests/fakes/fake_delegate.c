/*
 * A stand-in for libedgetpu, loadable through the TensorFlow Lite external
 * delegate interface (tensorflow/lite/delegates/external/README.md):
 *
 *   TfLiteDelegate* tflite_plugin_create_delegate(
 *       char** keys, char** values, size_t n, void (*report_error)(const char*));
 *   void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate);
 *
 * Options (all strings, as passed by load_delegate(path, options)):
 *   mode=passthrough   (default) a valid delegate that claims no nodes, so the
 *                      whole graph runs on the built-in CPU kernels
 *   mode=null          report an error and return NULL (load_delegate raises
 *                      ValueError with the reported text)
 *   mode=abort         abort() while loading
 *   abort_on_prepare=1 abort() when the interpreter applies the delegate
 *   hang_on_prepare=1  block forever when the interpreter applies the delegate
 *   fail_on_prepare=1  return kTfLiteError from Prepare
 *
 * No TensorFlow headers are needed: the struct below mirrors the start of
 * TfLiteDelegate in tensorflow/lite/core/c/common.h. The runtime only reads
 * the fields it knows, and calloc leaves any later ones zero.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAKE_EXPORT __attribute__((visibility("default")))

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  TfLiteStatus (*CopyFromBufferHandle)(void* context, struct TfLiteDelegate* delegate,
                                       int buffer_handle, void* tensor);
  TfLiteStatus (*CopyToBufferHandle)(void* context, struct TfLiteDelegate* delegate,
                                     int buffer_handle, void* tensor);
  void (*FreeBufferHandle)(void* context, struct TfLiteDelegate* delegate, int* handle);
  int64_t flags;                 /* kTfLiteDelegateFlagsNone */
  void* opaque_delegate_builder; /* must stay NULL: Prepare above is used */
} TfLiteDelegate;

typedef struct {
  int abort_on_prepare;
  int hang_on_prepare;
  int fail_on_prepare;
  unsigned long prepare_calls;
} FakeState;

static int is_true(const char* value) {
  return strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "True") == 0;
}

static TfLiteStatus fake_prepare(void* context, TfLiteDelegate* delegate) {
  (void)context;
  FakeState* state = (FakeState*)delegate->data_;
  state->prepare_calls++;
  if (state->abort_on_prepare) {
    abort();
  }
  if (state->hang_on_prepare) {
    for (;;) {
      pause();
    }
  }
  if (state->fail_on_prepare) {
    return kTfLiteError;
  }
  /* Claim nothing: ReplaceNodeSubsetsWithDelegateKernels is never called. */
  return kTfLiteOk;
}

static void report(void (*report_error)(const char*), const char* message) {
  if (report_error != NULL) {
    report_error(message);
  }
}

FAKE_EXPORT TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values,
                                                          size_t n,
                                                          void (*report_error)(const char*)) {
  const char* mode = "passthrough";
  FakeState options = {0, 0, 0, 0};
  char message[256];

  /* The Python binding declares the count as a C int; keep the low 32 bits. */
  n &= 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    const char* key = keys[i];
    const char* value = values[i];
    if (strcmp(key, "mode") == 0) {
      mode = value;
    } else if (strcmp(key, "abort_on_prepare") == 0) {
      options.abort_on_prepare = is_true(value);
    } else if (strcmp(key, "hang_on_prepare") == 0) {
      options.hang_on_prepare = is_true(value);
    } else if (strcmp(key, "fail_on_prepare") == 0) {
      options.fail_on_prepare = is_true(value);
    }
    /* Unknown keys (e.g. "device" as libedgetpu takes) are ignored. */
  }

  if (strcmp(mode, "null") == 0) {
    report(report_error, "fake edgetpu: no Edge TPU device found");
    return NULL;
  }
  if (strcmp(mode, "abort") == 0) {
    abort();
  }
  if (strcmp(mode, "passthrough") != 0) {
    snprintf(message, sizeof message,
             "fake edgetpu: bad mode '%s': valid modes are passthrough, null, abort", mode);
    report(report_error, message);
    return NULL;
  }

  TfLiteDelegate* delegate = calloc(1, sizeof(TfLiteDelegate) + 64);
  FakeState* state = calloc(1, sizeof(FakeState));
  if (delegate == NULL || state == NULL) {
    free(delegate);
    free(state);
    report(report_error, "fake edgetpu: out of memory");
    return NULL;
  }
  *state = options;
  delegate->data_ = state;
  delegate->Prepare = fake_prepare;
  delegate->flags = 0;
  return delegate;
}

FAKE_EXPORT void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  if (delegate == NULL) {
    return;
  }
  free(delegate->data_);
  free(delegate);
}

/* Test hook: how many times the interpreter called Prepare on this delegate. */
FAKE_EXPORT unsigned long fake_delegate_prepare_calls(const TfLiteDelegate* delegate) {
  if (delegate == NULL || delegate->data_ == NULL) {
    return 0;
  }
  return ((const FakeState*)delegate->data_)->prepare_calls;
}
